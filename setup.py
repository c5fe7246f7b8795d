import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def version():
    scope = {}
    with open(osp.join(HERE, 'bdl_mm', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='bdl_mm',
    version=version(),
    description='Bidirectional Learning for unsupervised domain adaptation of semantic segmentation '
    'in OpenMMLab 1.x (MMSegmentation + MMagic)',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.9',
    # The stack is installed and pinned by tools/install.sh (mmcv must be built from source there).
    install_requires=[],
    license='Apache License 2.0',
)
