"""The Detector (fit, score, save, load), the folder it is saved in, and ``predict`` on new files."""
