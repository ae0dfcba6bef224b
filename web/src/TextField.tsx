import { FormGroup, FormHelperText, HelperText, HelperTextItem, TextInput } from '@patternfly/react-core';
import type { ReactNode } from 'react';

/** A labelled text input with an optional line of help under it. */
export function TextField(props: {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  help?: ReactNode;
  type?: 'text' | 'password';
  /** The field's name in a plain form post. */
  name?: string;
  isDisabled?: boolean;
  isRequired?: boolean;
}) {
  return (
    <FormGroup label={props.label} fieldId={props.id} isRequired={!!props.isRequired}>
      <TextInput
        id={props.id}
        {...(props.name ? { name: props.name } : {})}
        type={props.type ?? 'text'}
        value={props.value}
        isDisabled={!!props.isDisabled}
        onChange={(_e, v) => props.onChange(v)}
      />
      {props.help && (
        <FormHelperText>
          <HelperText>
            <HelperTextItem>{props.help}</HelperTextItem>
          </HelperText>
        </FormHelperText>
      )}
    </FormGroup>
  );
}
