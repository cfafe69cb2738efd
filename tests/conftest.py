import os
import tempfile

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# `--hw cpu` reads this machine's calibration from the user cache: tests must not depend on
# whether a developer has calibrated, so they get an empty cache of their own.
os.environ["NEUPIMS_CACHE_DIR"] = tempfile.mkdtemp(prefix="neupims-test-cache-")
