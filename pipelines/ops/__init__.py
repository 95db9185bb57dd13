"""Running seqlab on a machine or a team's servers: settings read from the environment,
the local stack of servers (`seqlab up`), and the Prefect deployments.
"""
