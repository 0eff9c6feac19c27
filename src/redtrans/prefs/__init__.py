"""Expert preferences with rewrites for RePO, and human evaluation, on one annotation machinery.

- `generate`: two candidates per source post (two engine specs, or two seeded samples of one);
- `prescore`: chrF++ against a reference, else an LLM judge on the written rubric; orders the queue;
- `store`: SQLAlchemy (SQLite WAL by default, PostgreSQL by URL): accounts, leases, judgments, audit;
- `web`: the ``redtrans annotate`` app (FastAPI + Jinja2, no CDN);
- `export`: the RePO preference set by the rules of docs/prefs.md (and ``reference-rewrite`` without experts);
- `humaneval`, `stats`: pairwise human evaluation of `bench` outputs, win rate + bootstrap CI, agreement;
- `labelstudio`: the same pairwise task in Label Studio (shipped labeling config, export import).
"""
