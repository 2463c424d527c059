"""The plugins shipped with Tollgate, registered in its own ``pyproject.toml`` like any third party's:
``request-size-by-customer`` (:mod:`.request_size`) and ``ab-split`` (:mod:`.ab_split`)."""
