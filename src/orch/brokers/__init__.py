"""Brokers behind one interface (`Broker`): the simulated venue and Alpaca through alpaca-py."""
