"""Published rate-distortion points on Kodak (24 images), drawn as labelled markers next to our curves.

Plain table, like CompressAI's zoo results files. bpp from real file sizes, PSNR on RGB 8-bit. Only comparable
with our numbers when the evaluation dataset is the full-resolution Kodak set.
"""

KODAK_REFERENCE_POINTS: list[dict] = [
    {"name": "bmshj2018-factorized q1", "bpp": 0.123, "psnr": 26.91, "ms_ssim": 0.910,
     "source": "CompressAI results, Kodak"},
    {"name": "bmshj2018-hyperprior q1", "bpp": 0.131, "psnr": 27.58, "ms_ssim": 0.917,
     "source": "CompressAI results, Kodak"},
    {"name": "cheng2020-anchor q1", "bpp": 0.120, "psnr": 28.58, "ms_ssim": 0.924,
     "source": "CompressAI results, Kodak"},
    {"name": "HiFiC (lowest rate)", "bpp": 0.183, "psnr": 27.56, "ms_ssim": 0.937,
     "source": "Mentzer et al. 2020, published data"},
]
