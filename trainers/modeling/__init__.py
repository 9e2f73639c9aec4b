"""The DETR-style parts both methods use (HD-OVD and Open-Det sit above this package; it imports neither):
backbones with FPN, the query detector and its transformer, deformable attention, matching, the box criterion."""
