"""Dual-LLM back-translation sampling (`redtrans sample`): round trips through two models, ΔBLEU buckets,
a stratified draw and the SFT export. Entry point: `redtrans.sampling.stage.run_sample`."""

from redtrans.sampling.config import CorpusConfig, ModelSpec, SampleConfig, load_config

__all__ = ["CorpusConfig", "ModelSpec", "SampleConfig", "load_config"]
