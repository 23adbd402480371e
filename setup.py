"""Packaging for caelab: every setting comes from `settings.ini`, the single source nbdev also reads."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
c = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = ['3.10', '3.11', '3.12', '3.13']

lic_name, lic_classifier = licenses[c['license']]
min_py = c['min_python']
classifiers = [
    f"Development Status :: {statuses[int(c['status']) - 1]}",
    f"Intended Audience :: {c['audience'].title()}",
    f"License :: {lic_classifier}",
    f"Natural Language :: {c['language'].title()}",
    "Topic :: Multimedia :: Graphics",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
] + [f"Programming Language :: Python :: {v}" for v in py_versions[py_versions.index(min_py):]]

def _split(key): return c.get(key, '').split()

setuptools.setup(
    name=c['lib_name'],
    version=c['version'],
    description=c['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=c['author'],
    author_email=c['author_email'],
    url=c['git_url'],
    license=lic_name,
    keywords=c['keywords'],
    classifiers=classifiers,
    packages=setuptools.find_packages(include=[c['lib_path'], c['lib_path'] + '.*']),
    include_package_data=True,
    package_data={c['lib_path']: ['weights/*.pt']},
    python_requires=f'>={min_py}',
    install_requires=_split('requirements'),
    extras_require={'dev': _split('dev_requirements')},
    entry_points={'console_scripts': _split('console_scripts'), 'nbdev': [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
    zip_safe=False,
)
