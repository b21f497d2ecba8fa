"""Writers for depth maps: lossless data files and visualisations, every one written atomically.

All writers take a float map of shape ``(H, W)`` and write one file. Each file is first written to a temporary
file in the destination folder and then moved into place with ``os.replace`` (``io.atomic``), so a killed run
never leaves a half-written output under the final name (``--skip-existing`` relies on this).

Formats (``FORMATS`` maps the name to the file-name suffix that ``inputs`` appends to an item's stem):

==========  =================  ==========================================================================
name        suffix             content
==========  =================  ==========================================================================
``npy``     ``.npy``           float32 ``(H, W)``, exactly the model's values (disparity, or metres)
``png16``   ``_depth16.png``   16-bit grayscale PNG. Relative (disparity): ``v = round((x - min) / (max -
                               min) * 65535)`` with ``min``/``max`` in the PNG text chunk, so
                               ``x = min + v / 65535 * (max - min)``. Metric: fixed unit, millimetres by
                               default (``x_m = v * 0.001``), 0 = no value, saturating at 65535 (65.535 m).
                               The text chunk ``depth_anything_v2`` (JSON) records the mapping;
                               ``read_depth_png16`` inverts it.
``color``   ``_color.png``     8-bit RGB, colormap ``Spectral_r`` by default (the reference's), red = near
``gray``    ``_gray.png``      8-bit grayscale, white = near
``sbs``     ``_sbs.png``       the input image, a 50 px white gap, and the colourised map (the reference's
                               side-by-side layout)
``pfm``     ``.pfm``           float32 Portable Float Map (lossless; ``read_pfm`` reads it back)
``ply``     ``.ply``           coloured binary point cloud (``pointcloud``): metric depth only, needs intrinsics
==========  =================  ==========================================================================

Near looks near in every visualisation: a relative (disparity) map is larger where the scene is closer, a
metric depth map is smaller there, so metric maps are drawn with the ramp reversed (``display_range``).

Colormaps: ``Spectral_r`` (default), ``Spectral``, ``viridis``, ``plasma``, ``inferno``, ``magma``,
``turbo``, ``gray`` and their ``_r`` forms are embedded here as the exact 256-entry tables matplotlib 3.11
produces (so the output matches the reference, which maps through matplotlib with an 8-bit index); any other
matplotlib colormap name works when matplotlib is installed (imported lazily).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from .atomic import atomic_write
from .depth_files import read_pfm, write_pfm  # noqa: F401  (read_pfm: part of this module's API)

DepthKind = Literal["disparity", "metric"]

#: Output format name -> file-name suffix appended to an item's output stem (see ``inputs``).
FORMATS: dict[str, str] = {
    "npy": ".npy",
    "png16": "_depth16.png",
    "color": "_color.png",
    "gray": "_gray.png",
    "sbs": "_sbs.png",
    "pfm": ".pfm",
    "ply": ".ply",
}

#: The PNG text key that carries the 16-bit mapping (JSON).
PNG16_KEY = "depth_anything_v2"
#: Default unit of metric 16-bit PNGs: metres per count (millimetres, like OAK-D/Kinect/ROS depth images).
DEFAULT_METRIC_UNIT_M = 0.001
#: Width of the white gap in the side-by-side image (the reference's 50 px).
SBS_GAP_PX = 50

# Exact matplotlib 3.11 lookup tables, ``(cmap(np.arange(256))[:, :3] * 255).astype(uint8)`` in RGB order,
# base64 of the (256, 3) uint8 bytes. The reference draws with ``cmap(uint8_index)``, i.e. these tables.
_EMBEDDED_LUTS: dict[str, str] = {
    "Spectral_r": (
        "Xk+iXFGjWlOkWFWlV1emVVqnU1yoUV6pUGCqTmOrTGWsS2etSWmuR2yvRW6wRHCxQnKyQHW0Pne1PXm2O3u3OX24OIC5NoK6NIS7"
        "Moa8M4m8NYu7N426OY+5O5K4PZS3P5a2QZm1Q5u1RZ20R5+zSaKyS6SxTaawT6ivUauuU62tVa+sV7KrWbSqW7apXbioX7unYb2m"
        "Y7+lZsKlaMOka8SkbsWkcMakc8ekdsikeMmke8qkfsukgcykg82khs6kic+ki9CkjtGkkdKklNSkltWkmdaknNekntikodmkpNqk"
        "ptukqdykrN2jrt6jsN+is+CiteGht+KhuuOgvOSgvuWgwOWfw+afxeeex+ieyumdzOqdzuuc0eyc0+2b1e6b2O+a2vCa3PGZ3/KZ"
        "4fOY4/SY5vWY5vWZ5/Wb6Pac6fae6vaf6/eh7Pei7fik7vil7/in8Pmo8fmq8vqr8/qt9Pqu9fuw9vuy9/yz+Py1+fy2+v24+/25"
        "/P67/f68/v6+/v69/v27/vu5/vq3/vm1/viz/vex/vWv/vSt/vOr/vKp/vGn/u+l/u6j/u2h/uyf/uqd/umb/uiZ/ueX/uaV/uST"
        "/uOR/uKP/uGN/uCL/d6J/dyH/dqG/diE/daC/dSB/dJ//dB9/c58/cx6/cp4/ch3/cZ1/cRz/cJy/cBw/b5v/bxt/bpr/bhq/bZo"
        "/bRm/bJl/bBj/a5h/Kxg/Kpf/Kde+6Vc+6Jb+59a+p1Z+ppY+phX+ZVV+ZNU+JBT+I5S+ItR94lP94ZO94NN9oFM9n5L9nxK9XlI"
        "9XdH9XRG9HJF9G9E9G1D8mtD8WlD8GdE72VE7WNF7GFF62BG6l5G6VxH51pH5lhI5VZI5FVJ4lNJ4VFK4E9K301L3ktL3ElL20hM"
        "2kZM2URN2EJN1kBO1T5O0zxO0TpOzzhNzTVNyzNMyTBMxi5LxCxLwilKwCdKviRJvCJJuiBItx1ItRtHsxhHsRZGrxRGrRFFqg9F"
        "qAxEpgpEpAhDogVDoANCngFC"
    ),
    "Spectral": (
        "ngFCoANCogVDpAhDpgpEqAxEqg9FrRFFrxRGsRZGsxhHtRtHtx1IuiBIvCJJviRJwCdKwilKxCxLxi5LyTBMyzNMzTVNzzhN0TpO"
        "0zxO1T5O1kBO2EJN2URN2kZM20hM3ElL3ktL301L4E9K4VFK4lNJ5FVJ5VZI5lhI51pH6VxH6l5G62BG7GFF7WNF72VE8GdE8WlD"
        "8mtD9G1D9G9E9HJF9XRG9XdH9XlI9nxK9n5L9oFM94NN94ZO94lP+ItR+I5S+JBT+ZNU+ZVV+phW+ppY+p1Z+59a+6Jb+6Vc/Kde"
        "/Kpf/Kxg/a5h/bBj/bJl/bRm/bZo/bhq/bpr/bxt/b5u/cBw/cJy/cRz/cZ1/ch3/cp4/cx6/c58/dB9/dJ//dSB/daC/diE/dqG"
        "/dyH/d6J/uCL/uGN/uKP/uOR/uST/uaV/ueX/uiZ/umb/uqd/uyf/u2h/u6j/u+l/vGn/vKp/vOr/vSt/vWv/vex/viz/vm1/vq3"
        "/vu5/v27/v69/v6+/f68/P67+/25+v24+fy2+Py19/yz9vuy9fuw9Pqu8/qt8vqr8fmq8Pmo7/in7vil7fik7Pei6/eh6vaf6fae"
        "6Pac5/Wb5vWZ5vWY4/SY4fOY3/KZ3PGZ2vCa2O+a1e6b0+2b0eyczuuczOqdyumdx+iexeeew+afwOWfvuWgvOSguuOgt+KhteGh"
        "s+CisN+irt6jrN2jqdykptukpNqkodmkntiknNekmdakltWklNSkkdKkjtGki9Ckic+khs6kg82kgcykfsuke8qkeMmkdsikc8ek"
        "cMakbsWka8SkaMOkZsKlY7+lYb2mX7unXbioW7apWbSqV7KrVa+sU62tUauuT6ivTaawS6SxSaKyR5+zRZ20Q5u1QZm1P5a2PZS3"
        "O5K4OY+5N426NYu7M4m8Moa8NIS7NoK6OIC5OX24O3u3PXm2Pne1QHW0QnKyRHCxRW6wR2yvSWmuS2etTGWsTmOrUGCqUV6pU1yo"
        "VVqnV1emWFWlWlOkXFGjXk+i"
    ),
    "viridis": (
        "RAFURAJVRANXRQVYRQZaRQhbRglcRgteRgxfRg5hRw9iRxFjRxJlRxRmRxVnRxZpRxhqSBlrSBpsSBxuSB1vSB5wSCBxSCFySCJz"
        "SCN0RyV1RyZ2Ryd3Ryh4Ryp5Ryt6Ryx7Ri18Ri98RjB9RjF+RTJ/RTR/RTWARTaBRDeBRDmCQzqDQzuDQzyEQj2EQj6FQkCFQUGG"
        "QUKGQEOHQESHP0WHP0eIPkiIPkmJPUqJPUuJPUyJPE2KPE6KO1CKO1GKOlKLOlOLOVSLOVWLOFaLOFeMN1iMN1mMNlqMNluMNVyM"
        "NV2MNF6NNF+NM2CNM2GNMmKNMmONMWSNMWWNMWaNMGeNMGiNL2mNL2qNLmuOLmyOLm2OLW6OLW+OLHCOLHGOLHKOK3OOK3SOKnWO"
        "KnaOKneOKXiOKXmOKHqOKHqOKHuOJ3yOJ32OJ36OJn+OJoCOJoGOJYKOJYONJISNJIWNJIaNI4eNI4iNI4mNIomNIoqNIouNIYyN"
        "IY2MIY6MII+MIJCMIJGMH5KMH5OLH5SLH5WLH5aLHpeKHpiKHpmKHpmKHpqJHpuJHpyJHp2IHp6IHp+IHqCHH6GHH6KGH6OGIKSF"
        "IKWFIaaFIaeEIqeEI6iDI6mCJKqCJauBJqyBJ62AKK5/Ka9/KrB+K7F9LLF9LrJ8L7N7MLR6MrV6M7Z5Nbd4Nrh3OLl2Obl2O7p1"
        "Pbt0PrxzQL1yQr5xRL5wRb9vR8BuScFtS8JsTcJrT8NpUcRoU8VnVcZmV8ZlWcdkW8hiXslhYMlgYspfZMtdZ8xcacxba81Zbc5Y"
        "cM5Wcs9VdNBUd9BSedFRfNJPftJOgdNMg9NLhtRJiNVHi9VGjdZEkNZDktdBldc/l9g+mtg8ndk6n9k4oto3pdo1p9szqtsyrdww"
        "r9wust0std0rt90put4nvd4mv98kwt8ixd8hx+AfyuAezeAdz+Ec0uEb1OEa1+IZ2uIY3OIY3+MY4eMY5OMY5+QZ6eQZ7OQa7uUb"
        "8eUc8+Ue9uYf+OYh+uYi/eck"
    ),
    "plasma": (
        "DAeGEAeHEwaJFQaKGAaLGwaMHQaNHwWOIQWPIwWQJQWRJwWSKQWTKwWULQSULwSVMQSWMwSXNASYNgSYOASZOgSaOwOaPQObPwOc"
        "QAOcQgOdRAOeRQOeRwKfSQKfSgKgTAKhTgKhTwKiUQGiUgGjVAGjVgGjVwGkWQGkWgClXAClXgClXwCmYQCmYgCmZACnZQCnZwCn"
        "aACnagCnbACobQCobwCocACocgCocwCodQCodgGoeAGoeQGoewKofAKnfgOnfwOngQSnggSnhAWmhQamhgemiAeliQiliwmkjAqk"
        "jgykjw2jkA6jkg+ikxChlRGhlhKglxOgmRSfmhWemxeenRidnhmcnxqboBubohyaox2ZpB6YpR+XpyGXqCKWqSOVqiSUrCWTrSaS"
        "rieRryiQsCqPsSuPsiyOtC2NtS6Mti+LtzCKuDKJuTOIujSHuzWGvDaFvTeEvjiDvzmCwDuBwTyAwj2Awz5/xD9+xUB9xkF8x0J7"
        "yER6yUV5ykZ4y0d3zEh2zUl1zkp1z0t00E1z0U5y0U9x0lBw01Fv1FJu1VNt1lVt11Zs11dr2Fhq2Vlp2lpo21tn3F1m3F5m3V9l"
        "3mBk32Fj32Ji4GRh4WVg4mZg42df42he5Gpd5Wtc5Wxb5m1a525a6HBZ6HFY6XJX6nNW6nRV63ZU7HdU7HhT7XlS7XtR7nxQ731P"
        "735O8IBN8IFN8YJM8oRL8oVK84ZJ84dI9IlH9IpH9YtG9Y1F9o5E9o9D9pFC95JB95NB+JVA+JY/+Jg++Zk9+Zo8+pw7+p06+p86"
        "+qA5+6I4+6M3+6Q2/KY1/Kc1/Kk0/Koz/Kwy/K0x/a8x/bAw/bIv/bMu/bUt/bYt/bgs/bkr/bsr/bwq/b4p/cAp/cEo/cMo/cQn"
        "/cYm/Mcm/Mkm/Msl/Mwl/M4l+9Ak+9Ek+9Mk+tUk+tYk+tgk+dkk+dsk+N0k+N8k9+Ak9+Il9uQl9uUl9ecm9ekm9Oom8+wm8+4m"
        "8vAm8vEm8fMm8PUl8PYj7/gh"
    ),
    "inferno": (
        "AAADAAAEAAAGAQAHAQEJAQELAgEOAgIQAwISBAMUBAMWBQQYBgQbBwUdCAYfCQYhCgcjCwcmDQgoDggqDwktEAkvEgoyEwo0FAs2"
        "Fgs5Fws7GQs+GgtAHAxDHQxFHwxHIAxKIgtMJAtOJgtQJwtSKQtUKwpWLQpYLgpaMApcMgldNAlfNQlgNwlhOQliOwlkPAllPglm"
        "QAlmQQlnQwpoRQppRgppSAtqSgtqSwxrTQxrTw1sUA1sUg5sUw5tVQ9tVw9tWBBtWhFtWxFuXRJuXxJuYBNuYhRuYxRuZRVuZhVu"
        "aBZuahduaxdubRhubhhucBluchltcxptdRttdhtteBxtehxtex1sfR1sfh5sgB9rgR9rgyBrhSBqhiFqiCFqiSJpiyJpjSNpjiRo"
        "kCRokSVnkyVnlSZmliZmmCdlmShkmyhknCljniljoCpioSthoythpCxgpixfpy1fqS5eqy5drC9crjBbrzFbsTFasjJZtDNYtTNX"
        "tzRWuDVWujZVuzdUvTdTvjhSvzlRwTpQwjtPxDxOxT1Nxz5MyD5LyT9Ky0BJzEFIzUJHz0RG0EVE0UZD0kdC1EhB1UlA1ko/10s+"
        "2U092k4720863FA53VI43lM331Q24FY04lcz41gy5Fox5Vsw5lwu5l4t518s6GEr6WIq6mQo62Un7Gcm7Wgl7Woj7mwi720h8G8f"
        "8HAe8XId8nQc8nUa83cZ83kY9HoW9XwV9X4U9oAS9oER94MQ94UO+IcN+IgM+IoL+YwJ+Y4I+ZAI+pEH+pMG+pUG+pcG+5kG+5sG"
        "+50G+54H+6AH+6II+6QK+6YL+6gN+6oO+6wQ+64S+7AU+7EW+7MY+7Ua+7cc+7ke+rsh+r0j+r8l+sEo+cMq+cUs+ccv+Mkx+Ms0"
        "+M03988699E89tM/9tVC9ddF9dlI9NtL9NxP895S8+BW8+JZ8uRd8uZg8ehk8elo8ets8e1w8e508fB58fJ98vOB8vSF8/aJ9PeN"
        "9fiR9vqV9/uZ+fyd+v2g/P6k"
    ),
    "magma": (
        "AAADAAAEAAAGAQAHAQEJAQELAgINAgIPAwMRBAMTBAQVBQQXBgUZBwUbCAYdCQcfCgciCwgkDAkmDQooDgoqDwssEAwvEQwxEg0z"
        "FA01FQ44Fg46Fw88GA8/GhBBGxBEHBBGHhBJHxFLIBFNIhFQIxFSJRFVJhFXKBFZKhFcKxFeLRBgLxBiMBBlMhBnNBBoNQ9qNw9s"
        "OQ9uOw9vPA9xPg9yQA9zQg90Qw91RQ92Rw93SBB4ShB5SxB5TRF6TxF7UBJ7UhJ8UxN8VRN9VxR9WBV+WhV+WxZ+XRd+Xhd/YBh/"
        "YRh/Yxl/ZRqAZhqAaBuAaRyAaxyAbB2Abh6Bbx6BcR+Bcx+BdCCBdiGBdyGBeSKBeiKBfCOBfiSBfySBgSWBgiWBhCaBhSaBhyeB"
        "iSiBiiiBjCmAjSmAjyqAkSqAkiuAlCuAlSyAlyx/mS1/mi1/nC5/ni5+ny9+oS9+ozB+pDB9pjF9pzF9qTJ8qzN8rDN7rjR7sDR7"
        "sTV6szV6tTZ5tjZ5uDd4uTd4uzh3vTl3vjl2wDp1wjp1wzt0xTx0xjxzyD1yyj5yyz5xzT9wzkBw0EFv0UJu00Jt1ENt1kRs10Vr"
        "2UZq2kdp3Ehp3Ulo3kpn4Etm4Uxm4k1l5E5k5VBj5lFi51Ji6FRh6lVg61Zg7Fhf7Vlf7lte7l1d715d8GBd8WFc8mNc82Vc82db"
        "9Ghb9Wpb9Wxb9m5b9nBb93Fb93Nc+HVc+Hdc+Xlc+Xtd+X1d+n9e+oBe+oJf+4Rg+4Zg+4hh+4pi/Ixj/I5j/JBk/JJl/JNm/ZVn"
        "/Zdo/Zlp/Ztq/Z1r/Z9s/aFu/aJv/aRw/qZx/qhz/qp0/qx1/q52/q94/rF5/rN7/rV8/rd9/rl//ruA/ryC/r6D/sCF/sKG/sSI"
        "/saJ/seL/smN/suO/c2Q/c+S/dGT/dKV/dSX/daY/dia/dqc/dyd/d2f/d+h/eGj/OOl/OWm/Oao/Oiq/Oqs/Oyu/O6w/PCx/PGz"
        "/PO1/PW3+/e5+/m7+/q9+/y/"
    ),
    "turbo": (
        "MBI7MRVCMhhKNBtRNR5YNiFfNyNlOCZsOSlyOix5Oy9/PDKFPDWLPTeRPjqWPz2cQEChQEOmQUWrQUiwQku1Q066Q1C+Q1PCRFbH"
        "RFjLRVvORV7SRWDWRWPZRmbdRmjgRmvjRm3mRnDoRnPrRnXtRnjwRnryRn30Rn/2RoL4RYT5RYf7RYn8RIz9Q479QpH+QZP+QJb+"
        "P5j+Ppv+PJ39O6D8OaL8OKX7Nqj5NKr4M6z2Ma/1L7HzLbTxK7bvKrntKLvrJr3pJcDmI8LkIcThIMbfHsncHcvaHM3XG8/UGtHS"
        "GdPPGNXMGNfKF9nHF9rEF9zCF96/GOC9GOG6GeO4GuS2G+W0HeexHuivIOmsIuupJOymJ+2jKe6gLO+dL/CaMvGXNfOUOPSRO/SN"
        "P/WKQvaHRveDSviATfl8Ufl5Vfp2WftyXftvYfxsZfxoaf1lbf1icf1fdP5ceP5ZfP5WgP5ThP5Qh/5Ni/5Ljv5Ikv5Glf5EmP5C"
        "m/1Anv0+ofw9pPw7pvs6qfs5rPo3rvk3sfg2s/g1tvc1ufU0u/Q0vvM0wPIzw/Ezxe8zyO4zyu0zzes0z+o00eg01Oc11uU12OM1"
        "2uI23eA239424dw349o35dg459c46NU46tM57NE57c8578058Ms68sg688Y69MQ69sI698A5+L45+bw5+bo4+rc3+7U3+7M2/LA1"
        "/K40/asz/aky/aYx/aMw/qEv/p4u/pst/pgs/ZUr/ZIp/Y8o/Ywn/Ikm/IYk+4Mj+4Ai+n0g+nof+Xce+HQc93Eb924a9msY9WgX"
        "9GUW82MV8mAU8V0T71oR7lgQ7VUP7FIO6lAN6U0N6EsM5kkL5UYK40QK4kIJ4EAI3j4I3TwH2zoH2TgG1zYG1jQF1DIF0jAF0C8E"
        "zi0EyysDySkDxygDxSYCwyQCwCMCviECux8BuR4BthwBtBsBsRkBrhgBrBYBqRUBphQBoxIBoBEBnRABmg4Blw0BlAwBkQsBjgoB"
        "iwkBhwgBhAcBgQYCfQUCegQC"
    ),
    "gray": (
        "AAAAAQEBAgICAwMDBAQEBQUFBgYGBwcHCAgICQkJCgoKCwsLDAwMDQ0NDg4ODw8PEBAQEREREhISExMTFBQUFRUVFhYWFxcXGBgY"
        "GRkZGhoaGxsbHBwcHR0dHh4eHx8fICAgICAgIiIiIyMjJCQkJCQkJiYmJycnKCgoKCgoKioqKysrLCwsLCwsLi4uLy8vMDAwMDAw"
        "MjIyMzMzNDQ0NDQ0NjY2Nzc3ODg4ODg4Ojo6Ozs7PDw8PDw8Pj4+Pz8/QEBAQUFBQUFBQ0NDRERERUVFRkZGR0dHSEhISUlJSUlJ"
        "S0tLTExMTU1NTk5OT09PUFBQUVFRUVFRU1NTVFRUVVVVVlZWV1dXWFhYWVlZWVlZW1tbXFxcXV1dXl5eX19fYGBgYWFhYWFhY2Nj"
        "ZGRkZWVlZmZmZ2dnaGhoaWlpaWlpa2trbGxsbW1tbm5ub29vcHBwcXFxcXFxc3NzdHR0dXV1dnZ2d3d3eHh4eXl5eXl5e3t7fHx8"
        "fX19fn5+f39/gICAgYGBgoKCg4ODg4ODhYWFhoaGh4eHiIiIiYmJioqKi4uLjIyMjY2Njo6Oj4+PkJCQkZGRkpKSk5OTk5OTlZWV"
        "lpaWl5eXmJiYmZmZmpqam5ubnJycnZ2dnp6en5+foKCgoaGhoqKio6Ojo6OjpaWlpqamp6enqKioqampqqqqq6urrKysra2trq6u"
        "r6+vsLCwsbGxsrKys7Ozs7OztbW1tra2t7e3uLi4ubm5urq6u7u7vLy8vb29vr6+v7+/wMDAwcHBwsLCw8PDw8PDxcXFxsbGx8fH"
        "yMjIycnJysrKy8vLzMzMzc3Nzs7Oz8/P0NDQ0dHR0tLS09PT09PT1dXV1tbW19fX2NjY2dnZ2tra29vb3Nzc3d3d3t7e39/f4ODg"
        "4eHh4uLi4+Pj4+Pj5eXl5ubm5+fn6Ojo6enp6urq6+vr7Ozs7e3t7u7u7+/v8PDw8fHx8vLy8/Pz8/Pz9fX19vb29/f3+Pj4+fn5"
        "+vr6+/v7/Pz8/f39/v7+////"
    ),
    "gray_r": (
        "/////v7+/f39/Pz8+/v7+vr6+fn5+Pj49/f39vb29fX19PT08/Pz8vLy8fHx8PDw7+/v7u7u7e3t7Ozs6+vr6urq6enp6Ojo5+fn"
        "5ubm5eXl5OTk4+Pj4uLi4eHh4ODg39/f3t7e3d3d3Nzc29vb2tra2dnZ2NjY19fX1tbW1dXV09PT09PT0tLS0dHR0NDQz8/Pzs7O"
        "zc3NzMzMy8vLysrKycnJyMjIx8fHxsbGxcXFw8PDw8PDwsLCwcHBwMDAv7+/vr6+vb29vLy8u7u7urq6ubm5uLi4t7e3tra2tbW1"
        "s7Ozs7OzsrKysbGxsLCwr6+vrq6ura2trKysq6urqqqqqampqKiop6enpqampaWlo6Ojo6OjoqKioaGhoKCgn5+fnp6enZ2dnJyc"
        "m5ubmpqamZmZmJiYl5eXlpaWlZWVk5OTk5OTkpKSkZGRkJCQj4+Pjo6OjY2NjIyMi4uLioqKiYmJiIiIh4eHhoaGhYWFg4ODg4OD"
        "goKCgYGBgICAf39/fn5+fX19fHx8e3t7eXl5eXl5eHh4d3d3dnZ2dXV1dHR0cnJycXFxcXFxcHBwb29vbm5ubW1tbGxsa2traWlp"
        "aWlpaGhoZ2dnZmZmZWVlZGRkYmJiYWFhYWFhYGBgX19fXl5eXV1dXFxcW1tbWVlZWVlZWFhYV1dXVlZWVVVVVFRUUlJSUVFRUVFR"
        "UFBQT09PTk5OTU1NTExMS0tLSUlJSUlJSEhIR0dHRkZGRUVFREREQkJCQUFBQUFBQEBAPz8/Pj4+PT09PDw8Ozs7OTk5ODg4ODg4"
        "Nzc3NjY2NTU1NDQ0MjIyMTExMDAwMDAwLy8vLi4uLS0tLCwsKysrKSkpKCgoKCgoJycnJiYmJSUlJCQkIiIiISEhICAgICAgHx8f"
        "Hh4eHR0dHBwcGxsbGRkZGBgYGBgYFxcXFhYWFRUVFBQUEhISEREREBAQEBAQDw8PDg4ODQ0NDAwMCwsLCQkJCAgICAgIBwcHBgYG"
        "BQUFBAQEAgICAQEBAAAAAAAA"
    ),
}
# For these, reversing the table is exactly matplotlib's ``_r`` map (checked); Spectral and gray are not,
# so both of their directions are stored.
_REVERSIBLE = ("viridis", "plasma", "inferno", "magma", "turbo")


def available_colormaps() -> list[str]:
    """Colormap names that work without matplotlib (any matplotlib name works when it is installed)."""
    return sorted([*_EMBEDDED_LUTS, *(f"{n}_r" for n in _REVERSIBLE)])


@lru_cache(maxsize=32)
def get_colormap(name: str) -> np.ndarray:
    """Return the colormap ``name`` as a read-only ``(256, 3)`` uint8 RGB lookup table.

    Raises ``ValueError`` for an unknown name (or when matplotlib, needed for names not embedded, is missing).
    """
    if name in _EMBEDDED_LUTS:
        lut = np.frombuffer(base64.b64decode(_EMBEDDED_LUTS[name]), np.uint8).reshape(256, 3)
        return lut
    if name.endswith("_r") and name[:-2] in _REVERSIBLE:
        lut = np.ascontiguousarray(get_colormap(name[:-2])[::-1])
        lut.setflags(write=False)
        return lut
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            f"unknown colormap {name!r}; expected one of {available_colormaps()} "
            "(other matplotlib names need matplotlib: pip install matplotlib)"
        ) from None
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; expected a matplotlib colormap name") from None
    lut = (cmap(np.arange(256))[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def display_range(values: np.ndarray, kind: DepthKind = "disparity") -> tuple[float, float]:
    """``(vmin, vmax)`` to pass to ``colorize``/``to_gray8`` so that near is drawn like near.

    Disparity (larger = closer): ``(min, max)``. Metric depth (smaller = closer): ``(max, min)``, which
    reverses the ramp. Non-finite values are ignored; an all-non-finite map gives ``(0.0, 0.0)``.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 0.0
    lo, hi = float(finite.min()), float(finite.max())
    if kind == "metric":
        return hi, lo
    if kind != "disparity":
        raise ValueError(f"expected kind 'disparity' or 'metric', got {kind!r}")
    return lo, hi


def normalize_to_index(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``values`` linearly to 8-bit indices, ``vmin`` -> 0 and ``vmax`` -> 255, truncating (reference).

    ``vmin``/``vmax`` default to the finite minimum/maximum; ``vmin > vmax`` reverses the ramp. Values outside
    the range are clipped. A constant map (``vmin == vmax``) maps to 0 without dividing by zero.
    Returns ``(index uint8 (H, W), finite bool (H, W))``.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {values.shape}")
    x = values.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if vmin is None or vmax is None:
        lo, hi = display_range(x[finite] if not finite.all() else x)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    span = float(vmax) - float(vmin)
    if span == 0.0 or not np.isfinite(span):
        return np.zeros(x.shape, np.uint8), finite
    # The reference's float32 ``(d - d.min()) / (d.max() - d.min()) * 255.0``, so the indices are identical.
    t = (x - np.float32(vmin)) / np.float32(span) * np.float32(255.0)
    np.clip(t, 0.0, 255.0, out=t)
    t[~finite] = 0.0
    return t.astype(np.uint8), finite


def colorize(
    values: np.ndarray, cmap: str = "Spectral_r", vmin: float | None = None, vmax: float | None = None
) -> np.ndarray:
    """Colour a ``(H, W)`` map: returns RGB uint8 ``(H, W, 3)``.

    ``vmin`` maps to the colormap's first colour and ``vmax`` to its last (defaults: the map's finite min/max;
    pass a fixed pair to colour many frames consistently; ``vmin > vmax`` reverses the ramp, see
    ``display_range``). The index is ``trunc((x - vmin) / (vmax - vmin) * 255)`` as in the reference, so with
    ``Spectral_r`` and a disparity map the result equals the reference's ``run.py`` output (in RGB order).
    Constant maps get the first colour; NaN/inf pixels are black.

    Example::

        rgb = colorize(result.prediction, "Spectral_r", *display_range(result.prediction, result.kind))
    """
    lut = get_colormap(cmap)
    index, finite = normalize_to_index(values, vmin, vmax)
    rgb = lut[index]
    if not finite.all():
        rgb[~finite] = 0
    return rgb


def to_gray8(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """8-bit grayscale ``(H, W)`` uint8: ``vmin`` -> 0 (black), ``vmax`` -> 255 (white); see ``colorize``."""
    index, _ = normalize_to_index(values, vmin, vmax)
    return index


def side_by_side(image_rgb: np.ndarray, depth_rgb: np.ndarray, gap_px: int = SBS_GAP_PX) -> np.ndarray:
    """``[image | white gap | depth visualisation]`` as one RGB uint8 image (the reference's layout)."""
    if image_rgb.shape[:2] != depth_rgb.shape[:2]:
        raise ValueError(
            f"expected the image and the depth visualisation to share (H, W), got {image_rgb.shape[:2]} "
            f"and {depth_rgb.shape[:2]}"
        )
    gap = np.full((image_rgb.shape[0], gap_px, 3), 255, np.uint8)
    return np.concatenate([image_rgb, gap, depth_rgb], axis=1)


def encode_png(image: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes of a uint8/uint16 ``(H, W)`` or uint8 ``(H, W, 3)`` RGB image, with optional ``tEXt`` chunks.

    Encoded by OpenCV with zlib level 1 and the RLE strategy: on depth maps 2-3x faster than Pillow at any
    level for the same size within a few per cent, and OpenCV releases the GIL, so writer threads run beside
    the model. Text chunks (Latin-1) are inserted right after the header (the PNG spec allows any position
    between IHDR and IEND).
    """
    import cv2

    if image.ndim == 3:
        image = image[:, :, ::-1]  # OpenCV encodes BGR
    ok, buf = cv2.imencode(
        ".png",
        np.ascontiguousarray(image),
        [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    )
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape} and dtype {image.dtype}")
    data = buf.tobytes()
    if not text:
        return data
    chunks = b""
    for key, value in text.items():
        body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
        chunks += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    header_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 data bytes, CRC
    assert data[12:16] == b"IHDR"
    return data[:header_end] + chunks + data[header_end:]


def _write_png(path: str | Path, image: np.ndarray, text: Mapping[str, str] | None = None) -> None:
    data = encode_png(image, text)
    with atomic_write(path) as f:
        f.write(data)


def write_rgb_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB ``(H, W, 3)`` or grayscale ``(H, W)`` uint8 image as PNG, atomically."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    _write_png(path, np.ascontiguousarray(image))


def write_npy(path: str | Path, depth: np.ndarray) -> None:
    """Write the map as float32 ``.npy`` (exact values), atomically. Read with ``np.load``."""
    with atomic_write(path) as f:
        np.save(f, np.asarray(depth, dtype=np.float32), allow_pickle=False)


# --------------------------------------------------------------------------------------------------------------
# 16-bit PNG


def encode_png16(
    depth: np.ndarray, kind: DepthKind = "disparity", *, metric_unit_m: float = DEFAULT_METRIC_UNIT_M
) -> tuple[np.ndarray, dict]:
    """Quantise a map to uint16 and return ``(values, mapping)``; ``mapping`` is what the PNG text chunk holds.

    - ``kind="disparity"``: ``v = round((x - min) / (max - min) * 65535)``; mapping
      ``{"kind": "disparity", "encoding": "linear", "min": min, "max": max}`` and ``x = min + v / 65535 *
      (max - min)``: error at most ``(max - min) / 131070``. A constant map stores ``v = 0`` and ``min == max``.
      Non-finite pixels (which a healthy model never produces) are stored as 0.
    - ``kind="metric"``: fixed unit ``metric_unit_m`` metres per count (default 0.001 = millimetres):
      ``v = clip(round(x / unit), 1, 65535)``, ``0`` = no value (non-finite or <= 0); mapping
      ``{"kind": "metric", "encoding": "fixed", "unit_m": unit, "invalid": 0}``. With millimetres the
      largest storable depth is 65.535 m (deeper pixels saturate; the ``.npy`` keeps them exactly).
    """
    x = np.asarray(depth, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {x.shape}")
    finite = np.isfinite(x)
    if kind == "disparity":
        lo, hi = display_range(x)
        span = hi - lo
        q = np.rint((x.astype(np.float64) - lo) / span * 65535.0) if span > 0 else np.zeros(x.shape)
        q[~finite] = 0
        values = np.clip(q, 0, 65535).astype(np.uint16)
        return values, {"kind": "disparity", "encoding": "linear", "min": lo, "max": hi, "scale": 65535}
    if kind == "metric":
        if not metric_unit_m > 0:
            raise ValueError(f"expected metric_unit_m > 0, got {metric_unit_m}")
        valid = finite & (x > 0)
        q = np.rint(np.where(valid, x, 0).astype(np.float64) / metric_unit_m)
        values = np.where(valid, np.clip(q, 1, 65535), 0).astype(np.uint16)
        return values, {"kind": "metric", "encoding": "fixed", "unit_m": metric_unit_m, "invalid": 0, "unit": "m"}
    raise ValueError(f"expected kind 'disparity' or 'metric', got {kind!r}")


def decode_png16(values: np.ndarray, mapping: Mapping) -> np.ndarray:
    """Invert ``encode_png16``: uint16 values + mapping -> float32 (metric: metres, 0 where no value)."""
    v = np.asarray(values).astype(np.float64)
    if mapping.get("kind") == "disparity" and mapping.get("encoding") == "linear":
        lo, hi = float(mapping["min"]), float(mapping["max"])
        return (lo + v / float(mapping.get("scale", 65535)) * (hi - lo)).astype(np.float32)
    if mapping.get("kind") == "metric" and mapping.get("encoding") == "fixed":
        return (v * float(mapping["unit_m"])).astype(np.float32)
    raise ValueError(f"expected a depth_anything_v2 16-bit mapping (linear disparity or fixed metric), got {mapping}")


def write_depth_png16(
    path: str | Path,
    depth: np.ndarray,
    kind: DepthKind = "disparity",
    *,
    metric_unit_m: float = DEFAULT_METRIC_UNIT_M,
) -> dict:
    """Write a 16-bit grayscale PNG (see ``encode_png16``) with the mapping in a ``tEXt`` chunk, atomically.

    The chunk key is ``depth_anything_v2``; its value is JSON, for example
    ``{"kind": "disparity", "encoding": "linear", "min": 0.12, "max": 7.9, "scale": 65535}``. Any PNG reader
    gets the raw uint16 values (OpenCV: ``cv2.imread(p, cv2.IMREAD_UNCHANGED)``); ``read_depth_png16`` returns
    the float map. Returns the mapping.
    """
    values, mapping = encode_png16(depth, kind, metric_unit_m=metric_unit_m)
    _write_png(path, values, {PNG16_KEY: json.dumps(mapping)})
    return mapping


def read_depth_png16(path: str | Path) -> np.ndarray:
    """Read a PNG written by ``write_depth_png16`` back to float32 ``(H, W)``.

    Disparity maps come back within half a quantisation step, ``(max - min) / 131070``; metric maps in metres
    within half the unit (0.5 mm by default), with 0 where there was no value.
    """
    from PIL import Image

    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
        if PNG16_KEY not in text:
            raise ValueError(f"{path}: expected a 16-bit depth PNG with a {PNG16_KEY!r} text chunk, found none")
        if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: expected a 16-bit grayscale PNG, got mode {im.mode}")
        values = np.asarray(im)
        mapping = json.loads(text[PNG16_KEY])
    return decode_png16(values, mapping)


# --------------------------------------------------------------------------------------------------------------
# All formats of one prediction


def write_depth_outputs(
    paths: Mapping[str, str | Path],
    depth: np.ndarray,
    kind: DepthKind = "disparity",
    *,
    image_rgb: np.ndarray | None = None,
    colormap: str = "Spectral_r",
    metric_unit_m: float = DEFAULT_METRIC_UNIT_M,
    intrinsics=None,  # pointcloud.Intrinsics, for "ply"
    remove_edges: bool = True,
) -> list[Path]:
    """Write ``depth`` in each format named in ``paths`` (format name -> file path, names from ``FORMATS``).

    Visualisations use ``display_range(depth, kind)`` (near looks near). ``sbs`` needs ``image_rgb``; ``ply``
    needs metric depth and ``intrinsics`` (``pointcloud.intrinsics_for``), is coloured with ``image_rgb`` when
    given, and drops flying pixels unless ``remove_edges`` is false. Returns the paths written. Unknown format
    names and missing requirements raise ``ValueError`` before anything is written.
    """
    unknown = sorted(set(paths) - set(FORMATS))
    if unknown:
        raise ValueError(f"expected formats from {sorted(FORMATS)}, got {unknown}")
    if "sbs" in paths and image_rgb is None:
        raise ValueError("the 'sbs' format needs image_rgb")
    if "ply" in paths and (kind != "metric" or intrinsics is None):
        raise ValueError(f"the 'ply' format needs metric depth and intrinsics, got kind {kind!r}")
    vmin, vmax = display_range(depth, kind)
    color = colorize(depth, colormap, vmin, vmax) if ("color" in paths or "sbs" in paths) else None
    written = []
    for fmt, path in paths.items():
        if fmt == "npy":
            write_npy(path, depth)
        elif fmt == "png16":
            write_depth_png16(path, depth, kind, metric_unit_m=metric_unit_m)
        elif fmt == "color":
            write_rgb_png(path, color)
        elif fmt == "gray":
            write_rgb_png(path, to_gray8(depth, vmin, vmax))
        elif fmt == "sbs":
            write_rgb_png(path, side_by_side(image_rgb, color))
        elif fmt == "pfm":
            write_pfm(path, depth)
        elif fmt == "ply":
            from . import pointcloud

            points, colors = pointcloud.depth_to_points(
                depth, intrinsics, image_rgb=image_rgb, remove_edges=remove_edges
            )
            pointcloud.write_ply(path, points, colors)
        written.append(Path(path))
    return written
