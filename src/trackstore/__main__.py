"""``python -m trackstore``: the ``trackstore`` command.

It works wherever the package can be imported, also where no console
script was installed (a buildout's ``bin/test``, a zipapp, ``pip
install --target``).
"""
from trackstore.cli import main


if __name__ == '__main__':
    main(prog_name='trackstore')
