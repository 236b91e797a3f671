"""The library side: find photo files, decode them to RGB images, read EXIF, export the best.

Nothing here knows about tensors or torch: the model side receives plain RGB ``PIL.Image`` objects.
"""
