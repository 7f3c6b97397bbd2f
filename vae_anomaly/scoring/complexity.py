"""The complexity L(x) of an image: its length when compressed losslessly (Serra et al. 2020),
used by the ``complexity_corrected`` score and the ``compressed_length`` baseline. Pillow
only, no model."""
from __future__ import annotations

import io

import numpy as np

# Lossless codecs for the complexity L(x), by score.complexity_codec: Pillow's format and options.
# JPEG 2000 (reversible 5/3 wavelet, raw codestream) and PNG are two of the compressors of
# Serra et al. 2020; on MNIST with digit 1 held out JPEG 2000 ranked better (docs/results.md).
CODECS = {
    "jpeg2000": ("JPEG2000", {"irreversible": False, "no_jp2": True}),
    "png": ("PNG", {"compress_level": 9}),
}


def compressed_bits(images: np.ndarray, codec: str = "jpeg2000") -> np.ndarray:
    """Complexity L(x) of each image (N, C, H, W) in [0, 1]: its length in bits when
    quantised to 8 bits and compressed losslessly by ``codec`` (Pillow), as in Serra et al.
    2020, sec. 3. One channel is saved as greyscale, three as RGB."""
    from PIL import Image  # imported here: only image scores need it

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"compressed_bits needs images (N, 1 or 3, H, W), got shape {images.shape}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("compressed_bits needs pixel intensities in [0, 1]")
    image_format, options = CODECS[codec]
    pixels = np.rint(images * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # (N, H, W, C)
    bits = np.empty(len(pixels))
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            buffer, format=image_format, **options
        )
        bits[i] = 8 * buffer.getbuffer().nbytes
    return bits
