"""OAK cameras (Luxonis, DepthAI v3): live and recorded frames, fusion with stereo depth, spatial readouts.

DepthAI is imported only by the live source and the archive tools (``pip install depth-anything-v2[oak]``);
recordings, fusion and readouts are host-only. See the README section "OAK cameras".
"""
