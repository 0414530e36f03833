"""The detector track: R-CNN (Girshick et al., CVPR 2014) and a Faster R-CNN comparison.

detectors.py is the registry (which detector a job's arch names, which recipe it takes); loop.py
trains and scores any of them. Their datasets are in workers.datasets with the others.
"""
