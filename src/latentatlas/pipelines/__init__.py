"""pipelines: whole jobs (analyze, classify, graphene, train, walls, unmix) from inputs to a results
folder. Everything below (analysis, models, plots, report) is computation; this layer reads
the inputs, runs it and writes the folder. The command line is a thin shell over it."""
