// The project's ChatML chat template, written for the tokenizers data/bpe.ts trains. It renders what
// MiniMind2's template renders (a default system prompt when there is none, `tools` as a system block,
// `tool_calls` as <tool_call> blocks, consecutive tool results folded into one user turn with
// <tool_response> blocks); test/data_bpe.test.ts checks that on the reference conversations.

const TOOLS_HEAD = '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>';
const TOOLS_TAIL = '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments ' +
  'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>';

export const DEFAULT_SYSTEM_PROMPT = 'You are a helpful assistant';

export const CHATML_TEMPLATE = [
  "{%- if tools %}",
  "{{- '<|im_start|>system\\n' }}",
  "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}",
  `{{- '${TOOLS_HEAD}' }}`,
  "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}",
  `{{- '${TOOLS_TAIL}<|im_end|>\\n' }}`,
  "{%- elif messages[0].role == 'system' %}",
  "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}",
  "{%- else %}",
  `{{- '<|im_start|>system\\n${DEFAULT_SYSTEM_PROMPT}<|im_end|>\\n' }}`,
  "{%- endif %}",
  "{%- for message in messages %}",
  "{%- if message.content is string %}{%- set content = message.content %}{%- else %}{%- set content = '' %}{%- endif %}",
  "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}",
  "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}",
  "{%- elif message.role == 'assistant' %}",
  "{{- '<|im_start|>assistant\\n' + content }}",
  "{%- if message.tool_calls %}",
  "{%- for call in message.tool_calls %}",
  "{%- if (loop.first and content) or not loop.first %}{{- '\\n' }}{%- endif %}",
  "{%- if call.function %}{%- set call = call.function %}{%- endif %}",
  "{{- '<tool_call>\\n{\"name\": \"' + call.name + '\", \"arguments\": ' }}",
  "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}",
  "{{- '}\\n</tool_call>' }}",
  "{%- endfor %}",
  "{%- endif %}",
  "{{- '<|im_end|>\\n' }}",
  "{%- elif message.role == 'tool' %}",
  "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}",
  "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}",
  "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}",
  "{%- endif %}",
  "{%- endfor %}",
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
].join('\n');
