"""Hardware overrides for experiments: re-exported from :mod:`neupims.config.overrides`
(the config layer owns them so that lower layers can apply overrides too)."""

from neupims.config.overrides import apply_hw_overrides, deep_merge

__all__ = ["apply_hw_overrides", "deep_merge"]
