from sentiment_pipeline.cli import main

main()
