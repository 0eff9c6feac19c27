"""The whole RedTrans recipe in one command: sample → sft → prefs → dpo/repo → bench → report, resumable.

```python
from redtrans.recipe import load_recipe, plan_recipe, run_recipe
recipe = load_recipe("examples/recipes/quickstart-cpu.yaml")
for decision in plan_recipe(recipe):
    print(decision.line())
run_recipe(recipe)
```
"""

from redtrans.recipe.config import RecipeConfig, load_recipe
from redtrans.recipe.run import Decision, plan_recipe, run_recipe

__all__ = ["Decision", "RecipeConfig", "load_recipe", "plan_recipe", "run_recipe"]
