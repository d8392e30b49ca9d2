"""Raw dataset -> prepared arrays + group attribute per sample (pwprune.data)."""


def prepare_stage(dataset_cfg, out_dir, log=print):
    from pwprune.data import prepare

    return prepare(dict(dataset_cfg), raw_root=None, out_dir=out_dir, log=log)
