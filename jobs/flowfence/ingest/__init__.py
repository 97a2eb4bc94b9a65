"""Getting flow logs in: converters for Calico's formats, the partitioned store, the receiver."""
