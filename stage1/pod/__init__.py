"""pod: from a pod directory and its manifest to the apps to run.

The pod directory in rkt's layout (directory.py), the manifest read in one
trip into typed, validated specs with every isolator and stage1/
annotation (manifest.py, isolators.py, order.py), users and groups in an
app's root (users.py), and the plan that turns specs into the engine's
Apps (plan.py).  Errors are errors.py's two kinds, one line each.

May import: engine.
"""
