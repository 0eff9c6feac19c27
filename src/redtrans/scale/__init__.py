"""Past one machine: the row-parallel stages (translate, sample) as Ray Data jobs (issue 34).

`shards` (no Ray) assigns rows to our own shards by a hash of their resume key, stages them, and tells which
shards of an output folder are committed; `raydata` runs the work on a Ray actor pool (each actor builds one
`Translator` and its engine from the same `EngineSpec`). Ray is an optional extra (``redtrans[ray]``):
nothing here imports it until a job runs, and without ``--ray`` no stage imports this package.
"""
