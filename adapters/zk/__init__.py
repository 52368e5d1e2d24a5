"""kazoo: what masters on several machines share through ZooKeeper.

`election.ZkLeaderElection` elects one leader among the masters and bumps the fencing epoch
(`/mantis/master/epoch`) when one takes office; `store.ZkStore` is the Store port whose appends
check that epoch in the same transaction, so only the current leader writes the event log.
"""
