"""Quality of an artifact against its float reference: perplexity, KL divergence, top-1 and greedy
agreement on built-in texts (`edgeseq eval`; evaluate.py)."""
from .evaluate import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
