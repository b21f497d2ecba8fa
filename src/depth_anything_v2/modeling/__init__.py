"""Pure ``nn.Module`` building blocks: tensors in, tensors out; no files, no image decoding, no device choice."""
