"""What both halves of geoverdict share, and nothing else: GPS EXIF reading and where things live.

The service (no torch), the training code and its TorchServe handler, and the local stack
launcher all import this package; it imports none of them.
"""
