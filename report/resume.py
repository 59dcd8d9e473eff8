"""Resuming a run only with the settings it was started with."""


def changed_settings(run_dir, recorded, current, keys):
    """A one-line message naming every setting of `keys` (in their order) whose recorded value
    differs from the current one (`--key: old -> new`), or None when they agree."""
    differ = [f"--{k}: {recorded.get(k)!r} -> {current.get(k)!r}" for k in keys if recorded.get(k) != current.get(k)]
    if not differ:
        return None
    return (f"{run_dir} was trained with other settings ({', '.join(differ)}); resume it with its own settings "
            f"or use a new --logdir")
