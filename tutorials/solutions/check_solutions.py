# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The reference solutions pass their own checks
#
# Every exercise of tutorials 01–09 has its solution in `exercises_NN.py` next to this notebook,
# and the track's engine pieces are in `track.py` (its method pieces are the notebooks' functions).
# This notebook grades them all, as `tinycurv check NN exercises_NN.py` would from a shell; CI
# executes it, so a change of the library that breaks a solution, or a grader that rejects a correct
# one, fails the build. Instructors can withhold this whole folder (`tutorials/solutions/`).

# %%
from pathlib import Path

from tinycurv import course
from tinycurv.course.grader import load_file

folder = next(p for p in (Path.cwd(), Path.cwd() / "tutorials" / "solutions")
              if (p / "exercises_01.py").is_file())
verdicts = []
for path in sorted(folder.glob("exercises_*.py")) + [folder / "track.py"]:
    module = load_file(path)
    prefix = "T" if path.stem == "track" else path.stem.split("_")[1] + "."
    for ex in course.EXERCISES.values():
        if ex.id.startswith(prefix) and hasattr(module, ex.name):
            verdicts.append(course.check(ex.id, module))

# %%
graded = {v.exercise for v in verdicts}
missing = [i for i in course.EXERCISES if not i.startswith("T") and i not in graded]
missing += [i for i in ("T1.1", "T1.2", "T2.1", "T2.2") if i not in graded]
print(f"{sum(v.passed for v in verdicts)} of {len(verdicts)} solutions pass")
assert all(v.passed for v in verdicts) and not missing, missing
