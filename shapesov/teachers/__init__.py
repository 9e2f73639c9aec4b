"""Teachers trained by our own code on ShapesOV: a tiny open_clip CLIP and a tiny ClipCap, in real checkpoint formats."""
