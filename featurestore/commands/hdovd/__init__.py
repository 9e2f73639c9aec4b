"""The parts of `export-hdovd`: how HD-OVD's official trainer reads a COCO file (official_view), which store rows
feed each of its images (plan), and the files it loads (files)."""
