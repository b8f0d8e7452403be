"""Checkpoint I/O, in one place: the checkpoints `oemdm train` writes, resuming a run from
them, restoring a trained model from them, and the config a run directory or checkpoint
stands for.

Modules (one concept each; import from them):

    store            names on disk, one checkpoint written atomically, the versions behind
                     the `checkpoint` pointer, the files read back with checks, the
                     tokenizer record
    training_state   what `training_state.pt` holds: taken from a run, put back into one
                     (weights, optimiser, lr schedule, EMA, generators: resume is bit-exact)
    resume           continuing a run: the newest readable checkpoint, refused when the
                     config or the data changed; the config of `oemdm train --resume`
    restore          a run directory or checkpoint directory -> (model, experiment config,
                     data pipeline, checkpoint) for eval, sample and the judge
    sharded          `training.distributed: fsdp`: every process's shards of the weights,
                     optimiser and EMA, written into the checkpoint and read back (DCP)

Layout of a run directory:

    checkpoints/step-00000040/   complete checkpoints, the newest `keep_checkpoints` kept
    checkpoint -> checkpoints/step-00000040   symlink to the newest, replaced atomically

Each checkpoint holds:

    model/              OeMDM.save_pretrained of the weights used for eval/samples (the EMA
                        weights when EMA is on): config.json + model.safetensors
    tokenizer.json      tokenizer name, options and fitted state (e.g. the char vocabulary)
    checksums.json      sha256 of tokenizer.json, checked before it is used
    experiment.json     the resolved experiment config
    training_state.pt   raw weights, optimizer, lr schedule, EMA, RNG states, step, data position
    shards/             fsdp runs only: the weights, optimizer and EMA, one file per process
                        (then None in training_state.pt; `sharded`)

A version is written into a hidden temporary directory, fsynced, renamed to its final name
and only then pointed to, so at every instant the symlink (or, after a crash between the
rename and the pointer swap, the newest `checkpoints/step-*`) is a complete checkpoint.
`<run>/checkpoint/...` paths keep working through the symlink.
"""
