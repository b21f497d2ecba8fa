"""Training data: dataset readers, the synthetic scene generator, transforms and tar shards.

Submodules (imported on demand, so ``import depth_anything_v2.data`` stays light):

* :mod:`.datasets` — readers (Hypersim, Virtual KITTI 2, TartanAir, IRS, BlendedMVS, generic folder), the
  common sample dict, depth -> disparity conversion.
* :mod:`.synthetic` — procedural scenes with exact depth (``SyntheticScenes``, ``render_scene``).
* :mod:`.transforms` — resize / crop / flip, colour jitter, blur, CutMix.
* :mod:`.shards` — WebDataset-style tar shards: ``ShardWriter``, ``ShardDataset`` / ``iter_shards``.
"""
