"""The detector track: R-CNN (Girshick et al., CVPR 2014) and a Faster R-CNN comparison.

The dataset registry (workers.datasets) registers this package's datasets, and those modules
import workers.datasets.base. Importing the registry first, here, lets either side be imported
first: a detection dataset module is then never half-initialised when the registry needs it.
"""
import workers.datasets  # noqa: F401
