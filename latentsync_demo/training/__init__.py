"""Training: latent consistency distillation of the LatentSync UNet (``lcm_distill``), its data cache (``data``)."""
