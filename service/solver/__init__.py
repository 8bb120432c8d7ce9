"""The solver engine: a solvable request validated, turned into matrices and PyVRP data, solved in a
child process, and its answer as a solution payload.

No database and no HTTP here (a structure test holds it to that): `service.solving` runs it as jobs.
"""
