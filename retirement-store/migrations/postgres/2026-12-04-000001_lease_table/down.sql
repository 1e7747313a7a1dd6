DROP TABLE retirement_leases;
