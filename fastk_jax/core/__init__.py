"""The pure JAX core: delay laws, problems, k policies, schemes (one update), curves.

Nothing here knows of files, studies or plots.
"""
