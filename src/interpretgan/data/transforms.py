"""Image transforms on tensors: resizing uint8 images, random crop + flip (and its inverse for
ATTA's padded perturbation store)."""
from __future__ import annotations


import torch
import torch.nn.functional as F



def _resize_uint8(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    h = images.shape[-1]
    if size == h:
        return images
    if mode == "pad":
        if size < h or (size - h) % 2:
            raise ValueError(f"cannot pad {h} px images to {size} px")
        p = (size - h) // 2
        return F.pad(images, (p, p, p, p))
    if mode == "resize":
        out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"unknown resize mode {mode!r} (pad, resize)")


# --------------------------------------------------------------------------- augmentation
def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None):
    """Random crop with zero padding and horizontal flip, per sample, vectorised.

    x: (B, C, H, W). Returns ``(x_aug, (dy, dx, flip))`` with offsets in ``[0, 2*pad]``.
    """
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    return crop_flip(F.pad(x, (pad, pad, pad, pad)), dy, dx, flip, h, w), (dy, dx, flip)


def crop_flip(xp: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              h: int, w: int) -> torch.Tensor:
    """Crop ``(h, w)`` windows at per-sample offsets from padded ``xp`` (B, C, H+2p, W+2p), then flip."""
    b = xp.shape[0]
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w)[None])
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(b, 1, 1, w)
    bi = torch.arange(b).view(b, 1, 1, 1)
    ci = torch.arange(xp.shape[1]).view(1, -1, 1, 1)
    return xp[bi, ci, rows, cols]


def uncrop_flip(x: torch.Tensor, into: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                flip: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`crop_flip`: write ``x`` (B, C, h, w) back into padded ``into`` in place."""
    b, c, h, w = x.shape
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, c, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(b, 1, 1, w).expand(b, c, h, w)
    bi = torch.arange(b).view(b, 1, 1, 1).expand(b, c, h, w)
    ci = torch.arange(c).view(1, c, 1, 1).expand(b, c, h, w)
    into[bi, ci, rows, cols] = x
    return into
