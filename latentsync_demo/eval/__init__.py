"""Lip-sync metrics as the LatentSync paper reports them: SyncNet confidence (LSE-C / Sync_conf), LSE-D and the
AV offset (``sync``, ``faces``, ``scorer``), plus PSNR / SSIM outside the mouth (``quality``) and the batch command
``python -m latentsync_demo.eval`` (``batch``). Heavy imports stay in the submodules."""
