"""Solving as a service: solve jobs queued with the solution they fill (pgqueuer, in our database),
the worker that runs them with the engine (`service.solver`), their state on `solutions`, and the
routes that queue, cancel, read and stream them.
"""
