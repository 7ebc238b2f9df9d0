mod startup;
