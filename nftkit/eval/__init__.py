"""``nftkit eval`` as one package whose modules follow the data, each calling only earlier ones.

layout (GenEval's folder layout) <- specs (items) <- generation (images) <- scoring (rows)
<- recording (the run in the store) <- report (EvalReport, results.jsonl) <- api (the entry
point ``evaluate``, and ``run_evaluation`` / ``score_images``).
"""

from nftkit.eval.api import evaluate, run_evaluation, score_images
from nftkit.eval.generation import generate
from nftkit.eval.report import EvalReport
from nftkit.eval.specs import EvalSettings

__all__ = ["EvalReport", "EvalSettings", "evaluate", "generate", "run_evaluation", "score_images"]
