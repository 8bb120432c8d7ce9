"""Solving: a solvable request validated, turned into matrices and PyVRP data, solved, in any process.

No database and no HTTP here; the worker and the routes wire it up.
"""
