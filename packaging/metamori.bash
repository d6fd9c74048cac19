# bash completion for metamori (installed as
# share/bash-completion/completions/metamori).

_metamori_ids()
{
	# tags and "head"; ids are numbers the user types
	local tags
	tags=$(metamori ${1:+-C "$1"} tag 2>/dev/null | awk '{print $1}')
	printf '%s\n' head $tags
}

_metamori()
{
	local cur prev words cword
	_init_completion 2>/dev/null || {
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD-1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	local commands="init checkpoint status log diff restore ls cat mount verify prune tag du push run restart help"
	local i cmd="" dir=""
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-C) dir=${words[i+1]}; ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done
	if [[ $prev == -C || $prev == --to || $prev == --mirror || $prev == --every ]]; then
		[[ $prev == --every ]] && return
		COMPREPLY=($(compgen -d -- "$cur"))
		return
	fi
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$commands -C --help --version" -- "$cur"))
		return
	fi
	local opts=""
	case $cmd in
	init) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	checkpoint) opts="-m --message -q --quiet --json --exclude --mirror" ;;
	status) opts="--exclude --json -z --exit-code" ;;
	log) opts="-n --max-count --json" ;;
	diff) opts="--json -z --exit-code" ;;
	restore) opts="--to --exclude --json --dry-run --discard --continue --abort" ;;
	verify) opts="--data --json" ;;
	prune) opts="--keep-last --keep-hourly --keep-daily --keep-every --keep -n --dry-run --gc-threshold --json" ;;
	tag) opts="-f --force -d --delete --json" ;;
	du) opts="--json" ;;
	run) opts="--dmtcp --every --exclude -q --quiet --no-final --keep-empty"
	     if [[ $cur != -* ]]; then COMPREPLY=($(compgen -c -- "$cur")); return; fi ;;
	restart) opts="-q --quiet" ;;
	ls) opts="--json" ;;
	cat) opts="" ;;
	push) opts="-q --quiet"
	      if [[ $cur != -* ]]; then COMPREPLY=($(compgen -d -- "$cur")); return; fi ;;
	mount) opts="-f --foreground"
	       if [[ $cur != -* ]]; then COMPREPLY=($(compgen -d -- "$cur") $(compgen -W "$(_metamori_ids "$dir")" -- "$cur")); return; fi ;;
	help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
	elif [[ $cmd == @(diff|restore|restart|tag|ls|cat) || $prev == --keep ]]; then
		COMPREPLY=($(compgen -W "$(_metamori_ids "$dir")" -- "$cur"))
	fi
}
complete -F _metamori metamori
