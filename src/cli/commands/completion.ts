import type { Command } from 'commander';
import { LbError } from '../../errors.js';

/** Words per command path, from commander's own tree, so completion never drifts from the CLI. */
function tree(cmd: Command, path: string[] = [], out = new Map<string, string[]>()): Map<string, string[]> {
  const words = [
    ...cmd.commands.map((c) => c.name()),
    ...cmd.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x)),
  ];
  out.set(path.join(' '), words);
  for (const c of cmd.commands) tree(c, [...path, c.name()], out);
  return out;
}

function bash(program: Command): string {
  const cases = [...tree(program)]
    .map(([p, words]) => `    "${p}") words="${words.join(' ')}" ;;`)
    .join('\n');
  return `# lbctl bash completion: source <(lbctl completion bash)
_lbctl() {
  local cur path="" i w
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ $w == -* ]] && continue
    case "\${path:+$path }$w" in
${[...tree(program).keys()].filter((k) => k).map((k) => `      "${k}") path="${k}" ;;`).join('\n')}
    esac
  done
  local words=""
  case "$path" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _lbctl lbctl
`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script')
    .argument('[shell]', 'bash (zsh can load it through bashcompinit)', 'bash')
    .addHelpText('after', '\nExample:\n  lbctl completion bash > /etc/bash_completion.d/lbctl')
    .action((shell: string) => {
      if (shell !== 'bash') throw new LbError('ERR_LB_USAGE', `no completion for ${shell}`, { hint: 'bash; zsh: autoload bashcompinit && bashcompinit' });
      process.stdout.write(bash(program));
    });
}
