"""`python -m maml_tf.compare`, as the paper's commands in this README say: runs `report.compare`."""
from report import cli
from report.compare import main

if __name__ == "__main__":
    cli.run(main)
