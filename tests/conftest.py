import atexit
import os
import shutil
import tempfile

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# `--hw cpu` reads this machine's calibration from the user cache: tests must not depend on
# whether a developer has calibrated, so they get an empty cache of their own.
_CACHE = tempfile.mkdtemp(prefix="neupims-test-cache-")
os.environ["NEUPIMS_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
