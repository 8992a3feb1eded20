"""Run folders: where they live, what ``--ckpt_path`` means, ``run.json``, ``lenet runs``, saved configs, resuming."""
