"""Market data sources behind one interface (`MarketDataSource`)."""
