"""Training stages: supervised fine-tuning (`sft`) on TRL, with accelerate / DeepSpeed configs for scale."""
