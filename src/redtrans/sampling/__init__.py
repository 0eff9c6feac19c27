"""Dual-LLM back-translation sampling (`redtrans sample`): round trips through two models, ΔBLEU buckets,
a stratified draw and the SFT export. Entry point: `redtrans.sampling.stage.run_sample`."""

from redtrans.sampling.config import CorpusConfig, ModelConfig, SampleConfig, load_config

__all__ = ["CorpusConfig", "ModelConfig", "SampleConfig", "load_config"]
