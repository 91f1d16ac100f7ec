"""The backends that run the recipes of `data.recipes`: the Pillow transforms (`pillow`), the
tensor batches decoded and augmented on the device (`tensor`), small sets held decoded
(`held`), NVIDIA DALI (`dali`), batches made ahead in a thread (`prefetch`), and the loader of
an epoch that picks among them (`loader`)."""
