"""HD-OVD's loss terms (paper Sec. III): instance contrastive / relational distillation, novel-class-aware
classification and image-level contrastive distillation; `trainers.hdovd.criterion` combines them."""
